"""The console commands: `cifar-predict` (`predict`) and `cifar-serve` (`serve`).

May import anything in the runtime; nothing in the runtime imports `cli`.
"""
