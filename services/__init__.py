"""Domain operations shared by handlers, scheduler jobs, the CLI and benchmarks.

Services take what they need (a unit of work, a clock, settings) and return plain data; they
never build chat replies for the sender of a message and never import `handlers` or a chat
framework. `services.outbox.enqueue` is the one door to the outbox.
"""
