"""The queue engine: the delivery queue's state in Redis and its transitions, the Lua scripts
(``lua/``) and how they run, the compact stored forms (``history``), the memory budget and
slot moves. Imports nothing from the stores, ingest or outbound packages.
"""
