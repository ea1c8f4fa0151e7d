"""Prometheus metrics: `check --prometheus FILE` for node_exporter, and the service's collector,
read back with prometheus_client's own parser."""

from __future__ import annotations

import os
import stat

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tui.core.metrics import parse_address
from tui.demo.servers import HOST, closed_port

from .conftest import PASSWORD, cli
from .tui_support import write_accounts


def parsed(text: str) -> dict[str, dict[tuple, float]]:
    families = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            families.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = (
                sample.value
            )
    return families


def check(*args: str):
    return cli("check", *args)


def test_check_writes_the_gauges_for_the_textfile_collector(tmp_path, loopback):
    config = write_accounts(
        tmp_path / "accounts.toml",
        loopback,
        {
            "good": {"password": PASSWORD},
            "down": {"password": PASSWORD, "imap_port": closed_port()},
        },
    )
    out = tmp_path / "textfile"
    out.mkdir()
    proc = check("--config", str(config), "--prometheus", str(out / "connected_emails.prom"))
    assert proc.returncode == 2, proc.stderr
    assert [p.name for p in out.iterdir()] == ["connected_emails.prom"]  # no temporary left
    metrics = parsed((out / "connected_emails.prom").read_text())
    status = metrics["connected_email_status"]
    assert status[(("account", "good"), ("status", "connected"))] == 1.0
    assert status[(("account", "down"), ("status", "no_service_connection"))] == 1.0
    assert sum(v for k, v in status.items() if ("account", "down") in k) == 1.0
    assert len(status) == 12  # six statuses for each of two accounts, never "checking"
    up = metrics["connected_email_up"]
    assert up[(("account", "down"), ("protocol", "imap"))] == 0.0
    assert up[(("account", "down"), ("protocol", "smtp"))] == 1.0
    expiry = metrics["connected_email_cert_expiry_timestamp_seconds"]
    assert (("account", "good"), ("protocol", "imap")) in expiry
    assert (("account", "down"), ("protocol", "imap")) not in expiry  # no TLS, no certificate
    assert set(metrics["connected_email_check_duration_seconds"]) == {
        (("account", a), ("protocol", p)) for a in ("good", "down") for p in ("imap", "smtp")
    }
    assert set(metrics["connected_email_last_check_timestamp_seconds"]) == {
        (("account", "good"),),
        (("account", "down"),),
    }
    assert "connected_email_checks_total" not in metrics  # a counter would reset every run


def test_a_textfile_not_named_prom_is_written_with_a_warning(tmp_path, loopback):
    config = write_accounts(tmp_path / "accounts.toml", loopback, {"good": {"password": PASSWORD}})
    proc = check("--config", str(config), "--prometheus", str(tmp_path / "metrics.txt"))
    assert proc.returncode == 0, proc.stderr
    assert "node_exporter's textfile collector reads only *.prom files" in proc.stderr
    assert parsed((tmp_path / "metrics.txt").read_text())["connected_email_up"]


def test_a_textfile_that_cannot_be_written_is_said_and_the_verdict_kept(tmp_path, loopback):
    config = write_accounts(tmp_path / "accounts.toml", loopback, {"good": {"password": PASSWORD}})
    target = tmp_path / "missing" / "connected_emails.prom"
    proc = check("--config", str(config), "--prometheus", str(target))
    assert proc.returncode == 0
    assert proc.stdout.startswith("CONNECTED EMAILS OK")
    assert f"The metrics could not be written to {target}" in proc.stderr


def test_a_textfile_path_that_is_no_file_is_left_as_it_is(tmp_path, loopback):
    """The file is written beside the target and renamed over it: given a FIFO, a device or a
    socket (--prometheus /dev/stdout, as root), the rename replaced it with a regular file."""
    config = write_accounts(tmp_path / "accounts.toml", loopback, {"good": {"password": PASSWORD}})
    fifo = tmp_path / "connected_emails.prom"
    os.mkfifo(fifo)
    proc = check("--config", str(config), "--prometheus", str(fifo))
    assert proc.returncode == 0
    assert proc.stdout.startswith("CONNECTED EMAILS OK")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode), "the FIFO was replaced"
    assert proc.stderr == (
        f"The metrics were not written: {fifo} is not a regular file (it is a FIFO). Name a "
        "file in node_exporter's textfile folder, such as "
        "/var/lib/node_exporter/textfile_collector/connected_emails.prom.\n"
    )
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(fifo.name)] == [fifo.name]


def test_a_textfile_reached_through_a_symlink_is_written_where_it_points(tmp_path, loopback):
    """The link stays a link (a folder managed by configuration tools links its files)."""
    config = write_accounts(tmp_path / "accounts.toml", loopback, {"good": {"password": PASSWORD}})
    real = tmp_path / "textfile" / "connected_emails.prom"
    real.parent.mkdir()
    real.write_text("")
    link = tmp_path / "metrics.prom"
    link.symlink_to(real)
    proc = check("--config", str(config), "--prometheus", str(link))
    assert proc.returncode == 0, proc.stderr
    assert link.is_symlink() and link.resolve() == real
    assert parsed(real.read_text())["connected_email_up"]


@pytest.mark.parametrize(
    "address, expected",
    [
        ("9857", ("127.0.0.1", 9857)),
        ("0.0.0.0:9857", ("0.0.0.0", 9857)),
        ("[::1]:9857", ("::1", 9857)),
        (f"{HOST}:0", (HOST, 0)),
    ],
)
def test_metrics_address_a_port_alone_is_loopback(address, expected):
    assert parse_address(address) == expected


@pytest.mark.parametrize("address", ["localhost", "127.0.0.1:http", "1:99999", ""])
def test_a_bad_metrics_address_says_the_form(address):
    with pytest.raises(ValueError, match="is not HOST:PORT or PORT; for example --metrics 9857"):
        parse_address(address)
