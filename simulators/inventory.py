"""Seeded customers for simulated meters, and the contract §6 inventory CSV of a fleet, so a
fleet can be imported with ``doxa meters import`` exactly as a utility's inventory would."""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Iterable
from dataclasses import dataclass

COLUMNS = (
    "customer_code",
    "customer_name",
    "address",
    "province",
    "tariff_group",
    "reading_day",
    "meter_serial",
    "protocol",
    "model",
    "host",
    "port",
    "unit_id",
    "multiplier",
)
_FAMILY = ("Nguyễn", "Trần", "Lê", "Phạm", "Huỳnh", "Hoàng", "Võ", "Phan", "Đặng", "Bùi", "Đỗ")
_MIDDLE = ("Văn", "Thị", "Minh", "Ngọc", "Hữu", "Thanh", "Đức", "Hoài", "Quốc")
_GIVEN = ("An", "Bình", "Cường", "Dung", "Hà", "Hải", "Hạnh", "Khoa", "Lan", "Long", "Mai",
          "Nam", "Phúc", "Quân", "Sơn", "Tâm", "Thảo", "Trang", "Tuấn", "Vy")  # fmt: skip
_STREETS = ("Lê Lợi", "Nguyễn Huệ", "Hai Bà Trưng", "Trần Hưng Đạo", "Lý Thường Kiệt",
            "Cách Mạng Tháng Tám", "Điện Biên Phủ", "Võ Văn Tần", "Nguyễn Trãi",
            "Phan Đình Phùng")  # fmt: skip
_PROVINCES = ("Bình Dương", "Đồng Nai", "Long An", "Tiền Giang", "Cần Thơ", "Tây Ninh",
              "Bến Tre", "An Giang", "Kiên Giang", "Bà Rịa - Vũng Tàu", "Vĩnh Long")  # fmt: skip


@dataclass(frozen=True)
class Customer:
    code: str
    name: str
    address: str
    province: str
    reading_day: int


def make_customer(seed: int, serial: str, code: str) -> Customer:
    """A plausible southern Vietnamese household, the same for the same seed and serial."""
    rng = random.Random(f"doxa-customer:{seed}:{serial}")
    name = f"{rng.choice(_FAMILY)} {rng.choice(_MIDDLE)} {rng.choice(_GIVEN)}"
    address = f"{rng.randint(1, 250)} {rng.choice(_STREETS)}"
    return Customer(code, name, address, rng.choice(_PROVINCES), rng.randint(1, 28))


def customer_code(prefix: str, index: int) -> str:
    """EVN style: 2 letters + 4-character unit code (``prefix``) + 7 digits = 13 characters."""
    if len(prefix) != 6 or not prefix[:2].isalpha() or not prefix.isalnum():
        raise ValueError(
            f"customer prefix {prefix!r} must be 2 letters and a 4-character unit code"
        )
    if not 0 <= index < 10_000_000:
        raise ValueError("at most 10,000,000 customers per prefix")
    return f"{prefix.upper()}{index + 1:07d}"


@dataclass(frozen=True)
class InventoryLine:
    customer: Customer
    serial: str
    protocol: str  # modbus or mqtt
    model: str = ""
    host: str = ""
    port: int | None = None
    unit_id: int | None = None
    framing: str = "tcp"  # gateway options (contract §11b)
    request_delay_ms: int = 0


GATEWAY_COLUMNS = ("framing", "request_delay_ms")


def inventory_csv(lines: Iterable[InventoryLine]) -> str:
    """The contract §6 CSV (header and one line per meter; multiplier 1), with the §11b gateway
    columns when some gateway needs them."""
    lines = list(lines)
    quirky = any(ln.framing != "tcp" or ln.request_delay_ms for ln in lines)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS + GATEWAY_COLUMNS if quirky else COLUMNS)
    for line in lines:
        c = line.customer
        row = [c.code, c.name, c.address, c.province, "residential", c.reading_day, line.serial,
               line.protocol, line.model, line.host, "" if line.port is None else line.port,
               "" if line.unit_id is None else line.unit_id, 1]  # fmt: skip
        if quirky:
            modbus = line.protocol == "modbus"
            row += [line.framing if modbus else "", line.request_delay_ms if modbus else ""]
        writer.writerow(row)
    return out.getvalue()
