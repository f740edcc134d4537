"""hello: the basics of hotswap (layout, build, load at start-up, ``invoke_each``, reload)."""
