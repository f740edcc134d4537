def fine():
    return 1


return 2
