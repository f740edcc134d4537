def live_task(n):
    return n + 1


class Live_Task:
    pass
