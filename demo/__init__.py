"""`make demo` (`python -m demo`): the main job end to end, run as a user runs it.

It sits above the stages on purpose: the trainer, the exporter and the runtime never call a
later stage; this script drives all of them through their console commands.
"""
