"""Service provisioning details that cost CPU or flaked under lanes: RabbitMQ's version without
rabbitmqctl, free ports below the ephemeral range."""


def test_rabbitmq_version_is_read_from_connection_start():
    from lab.services.rabbitmq import server_version
    table = b"\x0ccluster_nameS\x00\x00\x00\x13lab-31000@localhost" + b"\x07versionS\x00\x00\x00\x063.10.8"
    frame = b"\x01\x00\x00" + len(table).to_bytes(4, "big") + b"\x00\x0a\x00\x0a\x00\x09" + table + b"\xce"
    assert server_version(frame) == "3.10.8"
    assert server_version(b"\x01\x00\x00\x00\x00\x00\x04\x00\x0a\x00\x0a") == ""


def test_free_ports_avoid_the_ephemeral_range():
    from lab.services.base import _ephemeral_range, free_port
    low, _ = _ephemeral_range()
    assert all(port < low for port in (free_port() for _ in range(20)))
