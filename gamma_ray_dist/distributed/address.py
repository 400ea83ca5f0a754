"""Is a Ray address reachable? A bounded TCP check made before Ray is started.

``ray.init`` retries an address that does not answer for minutes ("Failed to connect to GCS"), and
an unroutable one ends in a long traceback. The command line therefore opens (and closes) a TCP
connection to the address's host and port first, within ``connect_timeout`` seconds, and refuses
the run with one line when that fails. Something may accept any connection on the way (a proxy
or gateway answering for every address): a gRPC call with the same deadline then tells Ray's gRPC
servers (any gRPC status, e.g. "unknown method") from a plain HTTP server or silence.

Addresses: ``"host:port"`` (the GCS of a cluster's head node), ``"ray://host:port"`` (Ray Client;
port 10001 when omitted). ``"auto"`` (the local cluster that ``ray start`` recorded) is left to
``ray.init``, which finds it or fails at once (Ray's look-up is not public API); ``"local"`` starts a
new Ray and is not checked.
"""
from __future__ import annotations

import socket

__all__ = ["AddressError", "parse_address", "check_address"]

#: Port of Ray Client (``ray://host``) when the address names none.
RAY_CLIENT_PORT = 10001


class AddressError(Exception):
    """A Ray address is malformed or does not answer (the message is one line naming it)."""


def parse_address(address: str) -> tuple[str, int]:
    """``(host, port)`` of ``"host:port"`` or ``"ray://host[:port]"`` (IPv6 hosts in brackets)."""
    text = address.strip()
    client = text.startswith("ray://")
    if client:
        text = text[len("ray://"):]
    elif "://" in text:
        raise AddressError(f"Ray address {address!r}: expected host:port or ray://host:port")
    text = text.rstrip("/")
    host, sep, port_text = text.rpartition(":")
    if text.startswith("[") and text.endswith("]"):  # "[::1]" without a port
        host, sep, port_text = text, "", ""
    if not sep:
        if not client:
            raise AddressError(f"Ray address {address!r}: no port (expected host:port, e.g. head:6379)")
        host, port_text = text, str(RAY_CLIENT_PORT)
    host = host.strip("[]")
    if not host:
        raise AddressError(f"Ray address {address!r}: no host")
    try:
        port = int(port_text)
    except ValueError:
        raise AddressError(f"Ray address {address!r}: port {port_text!r} is not a number") from None
    if not 0 < port < 65536:
        raise AddressError(f"Ray address {address!r}: port {port} is out of range")
    return host, port


def check_address(address: str, timeout: float) -> str:
    """Raise `AddressError` unless a TCP connection to ``address`` opens within ``timeout`` seconds.

    Returns the address; ``"auto"`` and ``"local"`` are returned unchecked.
    """
    shown = address
    if address in ("local", "auto"):
        return address
    host, port = parse_address(address)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except socket.timeout:
        raise AddressError(f"Ray address {shown}: no answer within {timeout:g} s "
                           "(is the cluster up and the port reachable? see ray.connect_timeout)") from None
    except socket.gaierror as exc:
        raise AddressError(f"Ray address {shown}: unknown host {host!r} ({exc.strerror})") from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise AddressError(f"Ray address {shown}: cannot connect to {host}:{port} ({reason})") from None
    _check_grpc(host, port, shown, timeout)
    return address


def _check_grpc(host: str, port: int, shown: str, timeout: float) -> None:
    """One gRPC call to a method no server has: a gRPC server answers with a status, others do not."""
    try:
        import grpc
    except ImportError:  # pragma: no cover - Ray brings grpcio
        return
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    channel = grpc.insecure_channel(target)
    try:
        call = channel.unary_unary("/gamma_ray_dist.AddressCheck/Ping",
                                   request_serializer=lambda b: b, response_deserializer=lambda b: b)
        try:
            call(b"", timeout=timeout)
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details() or ""
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise AddressError(f"Ray address {shown}: no answer within {timeout:g} s "
                                   "(is the cluster up? see ray.connect_timeout)") from None
            if code == grpc.StatusCode.UNAVAILABLE or "http2 header with status" in details:
                raise AddressError(f"Ray address {shown}: {host}:{port} answers, but not as a Ray "
                                   f"cluster ({details.splitlines()[0] if details else code.name})") from None
    finally:
        channel.close()
