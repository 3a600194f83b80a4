"""Process plumbing shared by every entry point: Redis connections, logging, metrics (and their
multiprocess folder), the garbage collector's settings. Imports no other subpackage.
"""
