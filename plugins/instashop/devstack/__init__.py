"""Developer tooling, never imported by the product: the local stack of real services run from this
clone (`instashop stack ...`), demo traffic (`instashop generate`) and the fault-injection soak
(`instashop chaos`). Its commands join the `instashop` CLI through the `instashop.commands` entry
point group, so an install without this package is the product alone.
"""
