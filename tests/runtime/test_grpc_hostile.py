"""Hostile gRPC clients against a real `cifar-serve --grpc-port` on 127.0.0.1.

Streams that never send their message, answers never read (an HTTP/2 window of 0),
connections that send only the HTTP/2 preface, bursts past the per-connection stream count,
messages over --max-body-mb, names as long as a message, and calls sent right after SIGTERM.
Each attack is bounded (tens to a couple of hundred streams or sockets) and each wait is an
event (a call's end, a socket closing, a frame, a log line) with a generous bound; the
server's deadlines are set to 1 s through its flags so that the events come quickly. While
an attack runs, a legitimate call on a new connection is answered and REST's /readyz is 200.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from test_serve_grpc import GrpcServe

grpc = pytest.importorskip("grpc")
pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc] not installed")
from tritonclient.grpc import service_pb2  # noqa: E402

pytestmark = pytest.mark.slow
BOUND = 30.0
INFER = "/inference.GRPCInferenceService/ModelInfer"
FLAGS = ("--header-timeout", "1", "--body-timeout", "1", "--timeout-keep-alive", "1")
FLAGS += ("--max-body-mb", "1", "--limit-concurrency", "20")
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# Each channel its own connection (grpc otherwise shares one per target in the process).
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]


@pytest.fixture(scope="module")
def server(valid_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GrpcServe]:
    srv = GrpcServe(valid_model, tmp_path_factory.mktemp("grpc-hostile") / "serve.log", *FLAGS)
    yield srv
    srv.http.stop()


def _request(images: int = 1, name: str = "cifar10", seed: int = 0) -> Any:
    x = np.random.default_rng(seed).integers(0, 256, (images, 32, 32, 3), dtype=np.uint8)
    request = service_pb2.ModelInferRequest(model_name=name, raw_input_contents=[x.tobytes()])
    request.inputs.add(name="image", datatype="UINT8", shape=list(x.shape))
    return request


def _unary(channel: Any) -> Any:
    return channel.unary_unary(
        INFER,
        request_serializer=service_pb2.ModelInferRequest.SerializeToString,
        response_deserializer=service_pb2.ModelInferResponse.FromString,
    )


async def _legitimate_call(address: str) -> None:
    """One ModelInfer on a new connection: answered, with 10 probabilities."""
    async with grpc.aio.insecure_channel(address, options=OWN_CONNECTION) as channel:
        answer = await _unary(channel)(_request(), timeout=BOUND)
    assert len(answer.raw_output_contents[0]) == 10 * 4


def _assert_ready(srv: GrpcServe) -> None:
    assert httpx.get(f"{srv.http.url}/readyz", timeout=BOUND).status_code == 200


def test_streams_that_never_send_their_message_are_cancelled(server: GrpcServe) -> None:
    """60 streams (20 on each of 3 connections, their most) send headers and never their
    message: more than --limit-concurrency, yet a legitimate call is answered while they
    wait, and each is ended by the receive deadline (--body-timeout) with DEADLINE_EXCEEDED
    and our message."""

    async def never() -> AsyncIterator[Any]:
        await asyncio.Event().wait()  # the message never comes
        yield _request()  # pragma: no cover

    async def scenario() -> list[Any]:
        channels = [
            grpc.aio.insecure_channel(server.address, options=OWN_CONNECTION) for _ in range(3)
        ]
        try:
            for channel in channels:  # the server's settings known: streams within its limit
                await channel.channel_ready()
            calls = [
                channels[i % 3].stream_unary(
                    INFER,
                    request_serializer=service_pb2.ModelInferRequest.SerializeToString,
                    response_deserializer=service_pb2.ModelInferResponse.FromString,
                )(never(), timeout=BOUND)
                for i in range(60)
            ]
            # Every stream's headers are on the wire before the legitimate call.
            await asyncio.gather(*(call.wait_for_connection() for call in calls))
            await _legitimate_call(server.address)
            await asyncio.to_thread(_assert_ready, server)
            return await asyncio.gather(*calls, return_exceptions=True)
        finally:
            for channel in channels:
                await channel.close()

    outcomes = asyncio.run(scenario())
    assert all(isinstance(o, grpc.aio.AioRpcError) for o in outcomes), outcomes[:3]
    assert {o.code() for o in outcomes} == {grpc.StatusCode.DEADLINE_EXCEEDED}
    assert {o.details() for o in outcomes} == {
        "the ModelInfer request message did not arrive within 1 s of its headers. Send it at "
        "once (or raise --body-timeout)."
    }


# --- a raw HTTP/2 client: the test controls every frame -------------------------------------
def _frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes([kind, flags])
        + struct.pack(">I", stream)
        + payload
    )


def _literal(name: str, value: str) -> bytes:
    """One HPACK 'literal header field without indexing, new name' (lengths below 127)."""
    return b"\x00" + bytes([len(name)]) + name.encode() + bytes([len(value)]) + value.encode()


def _read_frame(sock: socket.socket) -> tuple[int, int, int] | None:
    """(type, flags, stream) of the next frame (None: the server closed the connection)."""
    head = _recv_exactly(sock, 9)
    if head is None:
        return None
    size = int.from_bytes(head[:3], "big")
    if size and _recv_exactly(sock, size) is None:
        return None
    return head[3], head[4], int.from_bytes(head[5:9], "big") & 0x7FFFFFFF


def _recv_exactly(sock: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        try:
            chunk = sock.recv(size - len(data))
        except ConnectionResetError:
            return None
        if not chunk:
            return None
        data += chunk
    return data


def _unread_answers(address: str, count: int) -> socket.socket:
    """A raw connection whose streams have an HTTP/2 window of 0, with `count` ModelInfer
    calls each answered by the server (its response headers came) and never read."""
    message = _request().SerializeToString()
    fields = (
        (":method", "POST"),
        (":scheme", "http"),
        (":path", INFER),
        (":authority", address),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    )
    headers = b"".join(_literal(k, v) for k, v in fields)
    host, port = address.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=BOUND)
    # SETTINGS_INITIAL_WINDOW_SIZE (4) = 0: the server may send no DATA on any stream.
    sock.sendall(PREFACE + _frame(4, 0, 0, struct.pack(">HI", 4, 0)))
    sock.sendall(_frame(4, 1, 0))  # acknowledge the server's settings
    for stream in range(1, 2 * count, 2):  # one at a time: only unread answers pile up
        sock.sendall(_frame(1, 4, stream, headers))  # HEADERS, END_HEADERS
        data = b"\x00" + struct.pack(">I", len(message)) + message
        sock.sendall(_frame(0, 1, stream, data))  # DATA, END_STREAM
        while True:
            frame = _read_frame(sock)
            assert frame is not None, f"closed before stream {stream} was answered"
            kind, flags, answered = frame
            if kind == 1:  # HEADERS: the response's own, or a refusal's trailers
                assert answered == stream and not flags & 1, f"stream {stream} refused"
                break
    return sock


def test_answers_never_read_hold_no_slot(server: GrpcServe) -> None:
    """60 ModelInfer calls (20 on each of 3 connections whose streams have an HTTP/2 window of
    0), more than --limit-concurrency 20: each is answered (its response headers come, its
    data never can), and a legitimate call on a new connection is still served."""
    sockets = []
    try:
        for _ in range(3):
            sockets.append(_unread_answers(server.address, 20))
        asyncio.run(_legitimate_call(server.address))
        _assert_ready(server)
    finally:
        for sock in sockets:
            sock.close()


def test_preface_only_connections_are_closed_and_rest_stays_ready(server: GrpcServe) -> None:
    """150 connections that send the HTTP/2 preface (half of them their settings too) and
    nothing else: REST's /readyz is 200 meanwhile, the server closes every one of them (the
    handshake deadline, the idle deadline, the connection cap), and gRPC serves afterwards."""
    host, port = server.address.rsplit(":", 1)
    sockets = []
    try:
        for i in range(150):
            sock = socket.create_connection((host, int(port)), timeout=BOUND)
            sockets.append(sock)
            sock.sendall(PREFACE + (_frame(4, 0, 0) if i % 2 else b""))
        _assert_ready(server)
        for sock in sockets:
            while _read_frame(sock) is not None:  # settings, GOAWAY... until closed
                pass
    finally:
        for sock in sockets:
            sock.close()
    asyncio.run(_legitimate_call(server.address))


def test_a_burst_within_the_limit_is_answered(valid_model: Path, tmp_path: Path) -> None:
    """300 one-image calls at once on one new channel: more than HTTP/2's usual 100 streams,
    within --limit-concurrency, all answered."""
    flags = ("--limit-concurrency", "300", "--max-queue", "512")
    srv = GrpcServe(valid_model, tmp_path / "serve.log", *flags)

    async def burst() -> list[Any]:
        async with grpc.aio.insecure_channel(srv.address) as channel:
            infer = _unary(channel)
            calls = [infer(_request(seed=i), timeout=BOUND) for i in range(300)]
            return await asyncio.gather(*calls, return_exceptions=True)

    try:
        outcomes = asyncio.run(burst())
    finally:
        srv.http.stop()
    failed = [o for o in outcomes if isinstance(o, Exception)]
    assert not failed, {(o.code(), o.details()) for o in failed}


def test_oversize_messages_are_refused_before_they_are_buffered(server: GrpcServe) -> None:
    """24 concurrent 1.9 MB messages against --max-body-mb 1: each RESOURCE_EXHAUSTED from gRPC
    core before it is buffered, so the server's peak memory grows by far less than they add
    up to (46 MB)."""
    status = Path(f"/proc/{server.http.process.pid}/status")
    if not status.exists():
        pytest.skip("no /proc on this system")

    def peak_mb() -> float:
        line = next(x for x in status.read_text().splitlines() if x.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024

    before = peak_mb()
    big = _request(images=620)  # 1.9 MB

    async def flood() -> list[Any]:
        async with grpc.aio.insecure_channel(
            server.address, options=[("grpc.max_send_message_length", 2**27)]
        ) as channel:
            infer = _unary(channel)
            return await asyncio.gather(
                *(infer(big, timeout=BOUND) for _ in range(24)), return_exceptions=True
            )

    outcomes = asyncio.run(flood())
    assert {o.code() for o in outcomes} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert all("larger than max" in o.details() for o in outcomes), outcomes[0].details()
    print("peak MB before, after:", before, peak_mb())
    assert peak_mb() - before < 23, (before, peak_mb())
    asyncio.run(_legitimate_call(server.address))


def test_long_names_get_a_bounded_message_and_the_right_status(server: GrpcServe) -> None:
    """A 10,000-character model name is NOT_FOUND and a 200,000-character input name
    INVALID_ARGUMENT, each with a short excerpt of the name, never the transport's own
    RESOURCE_EXHAUSTED for an oversize status."""
    long_input = _request()
    long_input.inputs[0].name = "i" * 200_000

    async def calls() -> list[Any]:
        async with grpc.aio.insecure_channel(server.address) as channel:
            infer = _unary(channel)
            return await asyncio.gather(
                infer(_request(name="m" * 10_000), timeout=BOUND),
                infer(long_input, timeout=BOUND),
                return_exceptions=True,
            )

    model, tensor = asyncio.run(calls())
    assert model.code() == grpc.StatusCode.NOT_FOUND, model.details()
    assert model.details().startswith("unknown model 'mmmm") and len(model.details()) < 200
    assert tensor.code() == grpc.StatusCode.INVALID_ARGUMENT, tensor.details()
    assert tensor.details().startswith("unknown input 'iiii") and len(tensor.details()) < 200


def test_calls_sent_after_sigterm_are_answered_or_unavailable(
    valid_model: Path, tmp_path: Path
) -> None:
    """Six clients call in a loop while the server gets SIGTERM, each until it is told the
    server is going (as a client that then turns to another replica), then a burst of five
    more: every call is answered (accepted work is never dropped) or refused UNAVAILABLE with
    our message, none CANCELLED by the transport's close."""
    srv = GrpcServe(valid_model, tmp_path / "serve.log")
    outcomes: list[Any] = []
    shutting = "the server is shutting down; retry the call (another replica takes it)."

    async def client(infer: Any) -> None:
        for _ in range(10_000):  # bounded: the server refuses within its drain
            try:
                outcomes.append(await infer(_request(), timeout=BOUND))
            except grpc.aio.AioRpcError as exc:
                outcomes.append(exc)
                return

    async def scenario() -> None:
        async with grpc.aio.insecure_channel(srv.address) as channel:
            infer = _unary(channel)
            await infer(_request(), timeout=BOUND)
            tasks = [asyncio.ensure_future(client(infer)) for _ in range(6)]
            stopped = asyncio.ensure_future(asyncio.to_thread(srv.http.stop))
            await asyncio.gather(*tasks)
            await asyncio.gather(*(client(infer) for _ in range(5)))
            await stopped

    asyncio.run(scenario())
    refused = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
    assert len(refused) == 11
    assert {(o.code(), o.details()) for o in refused} == {(grpc.StatusCode.UNAVAILABLE, shutting)}
    assert "Traceback" not in srv.http.text()
