from .a import live_thing, Live_Other


async def Live_Other():
    pass
