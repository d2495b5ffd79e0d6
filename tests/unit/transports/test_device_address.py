"""Device URLs: every documented form parses to what it means; every mistake names itself."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware.transports.address import SCHEMES, parse_device_url
from firmware.transports.errors import DeviceUrlError


@pytest.mark.parametrize(
    ("text", "scheme", "path", "host", "port", "params"),
    [
        ("device:/dev/tpmrm0", "device", "/dev/tpmrm0", None, None, {}),
        ("device", "device", "/dev/tpmrm0", None, None, {}),
        ("tabrmd", "tabrmd", "", None, None, {}),
        ("swtpm:host=10.0.0.2,port=2400", "swtpm", "", "10.0.0.2", 2400, {}),
        ("swtpm", "swtpm", "", "localhost", 2321, {}),
        ("mssim:port=2500", "mssim", "", "localhost", 2500, {}),
        ("swtpm://127.0.0.1:2321", "swtpm", "", "127.0.0.1", 2321, {}),
        ("tis-i2c:///dev/i2c-1?addr=0x2e", "tis-i2c", "/dev/i2c-1", None, None, {"addr": "0x2e"}),
        (
            "TIS-SPI:///dev/spidev0.1?hz=10000000",
            "tis-spi",
            "/dev/spidev0.1",
            None,
            None,
            {"hz": "10000000"},
        ),
        (
            "mssim+serial:///dev/ttyUSB0?baud=115200",
            "mssim+serial",
            "/dev/ttyUSB0",
            None,
            None,
            {"baud": "115200"},
        ),
        ("mssim+socket://bridge.local:7000", "mssim+socket", "", "bridge.local", 7000, {}),
        ("mssim+rfc2217://[::1]:7001", "mssim+rfc2217", "", "::1", 7001, {}),
        ("serial:///dev/ttyS0?baud=9600", "serial", "/dev/ttyS0", None, None, {"baud": "9600"}),
        ("socket://127.0.0.1:7000", "socket", "", "127.0.0.1", 7000, {}),
    ],
)
def test_documented_forms_parse(text, scheme, path, host, port, params):
    url = parse_device_url(text)
    assert (url.scheme, url.path, url.host, url.port, dict(url.params)) == (
        scheme,
        path,
        host,
        port,
        params,
    )
    assert str(url) == text


@pytest.mark.parametrize(
    ("text", "fragment", "hint"),
    [
        ("i2c:///dev/i2c-1", '"i2c:///dev/i2c-1" is not a device URL', "tis-i2c://"),
        ("tis-i2c://dev/i2c-1", "names no absolute device path", "three slashes"),
        (
            "tis-i2c:///dev/i2c-1?adress=0x2e",
            "unknown parameter adress",
            "takes addr, checksum, locality",
        ),
        ("tis-i2c:///dev/i2c-1?addr", "is not name=value pairs", "e.g. ?addr=0x2e"),
        ("tis-spi:///dev/spidev0.0?hz=1&&", "is not name=value pairs", "join parameters with &"),
        ("swtpm://127.0.0.1", "names no host and port", "swtpm://HOST:PORT"),
        ("swtpm://127.0.0.1:99999", "names no host and port", ""),
        ("mssim+socket://host:7000/extra", "names no host and port", ""),
        ("device:dev/tpmrm0", "names no absolute device path", "device:/dev/tpmrm0"),
        ("swtpm:host=h,port=http", 'port "http" is not a TCP port', "between 1 and 65535"),
        ("serial:ttyS0", "is not a device URL", "two slashes"),
        ("tis-i2c:///dev/i2c-1?addr=0x90", "addr=0x90 is not a number from 3 to 119", "addr=0x2e"),
        ("tis-spi:///dev/spidev0.1?hz=fast", "hz=fast is not a number", ""),
        ("mssim+serial:///dev/ttyUSB0?baud=0", "baud=0 is not a number from 50", ""),
        ("tis-i2c:///dev/i2c-1?checksum=2", "checksum=2 is not on or off", "checksum=on"),
    ],
)
def test_mistakes_name_the_url_and_the_fix(text, fragment, hint):
    with pytest.raises(DeviceUrlError) as caught:
        parse_device_url(text)
    assert fragment in caught.value.message
    assert hint in (caught.value.hint or "")
    assert caught.value.http_status == 400


def test_integer_parameters_are_bounded_and_accept_hex():
    url = parse_device_url("tis-i2c:///dev/i2c-1?addr=0x2e&locality=4")
    assert url.param_int("addr", 0x2E, lo=0x03, hi=0x77) == 0x2E
    assert url.param_int("locality", 0, lo=0, hi=4) == 4
    assert url.param_int("missing", 7, lo=0, hi=9) == 7
    with pytest.raises(DeviceUrlError, match=r"addr=0x2ee is not a number from 3 to 119"):
        parse_device_url("tis-i2c:///dev/i2c-1?addr=0x2ee").param_int("addr", 0x2E, lo=3, hi=0x77)
    with pytest.raises(DeviceUrlError, match="locality=one"):
        parse_device_url("tis-i2c:///x?locality=one").param_int("locality", 0, lo=0, hi=4)


def test_flags_read_on_and_off():
    url = parse_device_url("tis-i2c:///dev/i2c-1?checksum=OFF")
    assert url.param_flag("checksum", True) is False
    assert parse_device_url("tis-i2c:///dev/i2c-1").param_flag("checksum", True) is True
    with pytest.raises(DeviceUrlError, match="checksum=maybe is not on or off"):
        parse_device_url("tis-i2c:///x?checksum=maybe").param_flag("checksum", True)


def test_endpoint_names_the_device_or_the_address():
    assert parse_device_url("tis-spi:///dev/spidev0.1").endpoint == "/dev/spidev0.1"
    assert parse_device_url("mssim+socket://10.1.2.3:7000").endpoint == "10.1.2.3:7000"


@given(st.text(max_size=80))
def test_any_text_parses_or_is_a_device_url_error(text):
    try:
        url = parse_device_url(text)
    except DeviceUrlError as error:
        assert error.message
    else:
        assert url.scheme in SCHEMES
