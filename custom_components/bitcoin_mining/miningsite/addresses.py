"""Parse the operator's list of miner addresses: hosts, ranges, subnets, ports."""

from __future__ import annotations

from dataclasses import dataclass
import ipaddress
import re

# A site has up to 1000 ASICs; a typo such as 10.0.0.0/16 must not start 65,536 probes.
MAX_ADDRESSES = 1000
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


class AddressListError(ValueError):
    """The address list cannot be used; `reason` is a short machine code, `item` the culprit."""

    def __init__(self, reason: str, item: str, message: str) -> None:
        """Keep the reason and the offending item for the UI."""
        super().__init__(message)
        self.reason = reason
        self.item = item


@dataclass(frozen=True, slots=True, order=True)
class MinerAddress:
    """Where one miner answers: a host and, on NAT or simulated sites, a port."""

    host: str
    port: int | None = None

    def __str__(self) -> str:
        """Host or host:port, the form the operator types."""
        return self.host if self.port is None else f"{self.host}:{self.port}"


def parse_addresses(text: str, limit: int = MAX_ADDRESSES) -> list[MinerAddress]:
    """Expand lines or comma-separated items into addresses, in order, refusing duplicates.

    Items: `10.0.0.5`, `10.0.0.5:4028`, `10.0.0.5-10.0.0.40`, `10.0.0.5-40`,
    `10.0.0.0/27` (hosts of the subnet), `miner-7.local`.
    """
    addresses: list[MinerAddress] = []
    seen: set[MinerAddress] = set()
    for item in (part.strip() for part in re.split(r"[\s,;]+", text)):
        if not item:
            continue
        for address in _expand(item, limit):
            if address in seen:
                raise AddressListError(
                    "duplicate_address", str(address), f"{address} is listed twice"
                )
            seen.add(address)
            addresses.append(address)
            if len(addresses) > limit:
                raise AddressListError("too_many_addresses", item, f"more than {limit} addresses")
    if not addresses:
        raise AddressListError("no_addresses", "", "no address given")
    return addresses


def _expand(item: str, limit: int) -> list[MinerAddress]:
    """One item of the list as addresses."""
    if "/" in item:
        try:
            network = ipaddress.IPv4Network(item, strict=False)
        except ValueError as err:
            raise AddressListError("invalid_address", item, f"{item}: {err}") from err
        if network.num_addresses > limit + 2:
            raise AddressListError(
                "too_many_addresses", item, f"{item} holds more than {limit} addresses"
            )
        hosts = list(network.hosts()) if network.prefixlen < 31 else list(network)
        return [MinerAddress(str(host)) for host in hosts]
    if "-" in item and _is_ipv4(item.partition("-")[0]):
        return _expand_range(item, limit)
    host, port = _split_port(item)
    if not _is_ipv4(host) and (not _HOSTNAME.match(host) or host.replace(".", "").isdigit()):
        raise AddressListError("invalid_address", item, f"{item} is not an address")
    return [MinerAddress(host, port)]


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def _split_port(item: str) -> tuple[str, int | None]:
    """host:port into its parts; the port must be 1..65535."""
    if ":" not in item:
        return item, None
    host, _, port_text = item.rpartition(":")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise AddressListError("invalid_address", item, f"{item}: the port must be 1 to 65535")
    return host, int(port_text)


def _expand_range(item: str, limit: int) -> list[MinerAddress]:
    """10.0.0.5-10.0.0.40 or 10.0.0.5-40, both ends included."""
    first_text, _, last_text = item.partition("-")
    try:
        first = ipaddress.IPv4Address(first_text)
        if "." not in last_text:
            last_text = first_text.rsplit(".", 1)[0] + "." + last_text
        last = ipaddress.IPv4Address(last_text)
    except ValueError as err:
        raise AddressListError("invalid_address", item, f"{item} is not an address range") from err
    if last < first:
        raise AddressListError("invalid_address", item, f"{item}: the range ends before it starts")
    count = int(last) - int(first) + 1
    if count > limit:
        raise AddressListError(
            "too_many_addresses", item, f"{item} holds {count} addresses, more than {limit}"
        )
    return [MinerAddress(str(first + offset)) for offset in range(count)]


def parse_fleet(
    text: str, families: tuple[str, ...], limit: int = MAX_ADDRESSES
) -> list[tuple[MinerAddress, str | None]]:
    """Lines of addresses, each line optionally ending in a family name (or `auto`).

    `10.0.1.1-10.0.1.100 whatsminer` gives 100 Whatsminers; a line without a family
    (or with `auto`) is detected by probing. Duplicates across lines are refused too.
    An empty text is an empty fleet.
    """
    fleet: list[tuple[MinerAddress, str | None]] = []
    seen: set[MinerAddress] = set()
    for raw_line in text.splitlines():
        line = raw_line.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        family: str | None = None
        if words[-1].lower() in (*families, "auto"):
            family = None if words[-1].lower() == "auto" else words[-1].lower()
            words = words[:-1]
            if not words:
                raise AddressListError("no_addresses", line, f"{line}: a family needs addresses")
        elif words[-1].isalpha() and "." not in words[-1]:
            raise AddressListError(
                "unknown_family", words[-1], f"{words[-1]} is not a known firmware family"
            )
        for address in parse_addresses(" ".join(words), limit):
            if address in seen:
                raise AddressListError(
                    "duplicate_address", str(address), f"{address} is listed twice"
                )
            seen.add(address)
            fleet.append((address, family))
            if len(fleet) > limit:
                raise AddressListError("too_many_addresses", line, f"more than {limit} addresses")
    return fleet
