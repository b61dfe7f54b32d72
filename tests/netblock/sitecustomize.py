"""No network for the test suite: every Python process the tests start (this directory is on their PYTHONPATH) and the
pytest process itself can reach loopback and Unix sockets only — what torch.distributed needs on one machine — while any
other connection or name lookup fails at once, naming the address. So each CLI test is also a test that the command works
offline. `FISAO_TEST_ALLOW_NETWORK=1` turns the block off."""
import errno
import os
import socket

_LOCAL_NAMES = {'localhost', '::1', '', None}


def _is_local(host) -> bool:
    if isinstance(host, bytes): host = host.decode(errors='replace')
    return host in _LOCAL_NAMES or str(host).startswith('127.') or host == socket.gethostname()


def block() -> None:
    "Patch `socket` so that only loopback / Unix-socket connections and lookups succeed (idempotent)."
    if getattr(socket, '_fisao_blocked', False): return
    real_connect, real_connect_ex, real_gai = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo

    def allowed(sock, address) -> bool:
        return sock.family == getattr(socket, 'AF_UNIX', None) or not isinstance(address, tuple) or _is_local(address[0])

    def connect(self, address):
        if not allowed(self, address): raise OSError(errno.ENETUNREACH, f'network blocked by the fisao test suite: {address}')
        return real_connect(self, address)

    def connect_ex(self, address):
        return real_connect_ex(self, address) if allowed(self, address) else errno.ENETUNREACH

    def getaddrinfo(host, *a, **k):
        if not _is_local(host): raise socket.gaierror(socket.EAI_NONAME, f'name lookup blocked by the fisao test suite: {host}')
        return real_gai(host, *a, **k)

    socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = connect, connect_ex, getaddrinfo
    socket._fisao_blocked = True


if os.environ.get('FISAO_TEST_ALLOW_NETWORK') != '1': block()
