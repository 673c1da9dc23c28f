"""miningsite: asyncio clients and the allocation core for a Bitcoin mining site.

Nothing in this package imports Home Assistant; the integration wraps it.
"""
