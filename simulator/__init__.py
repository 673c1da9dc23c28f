"""The site simulator: a mining site's hardware on loopback, for development and tests.

It never imports the integration or its library: each protocol is implemented
twice, once here and once there, so one cannot hide the other's bug.
"""

from .site import Site, SiteConfig

__all__ = ["Site", "SiteConfig"]
