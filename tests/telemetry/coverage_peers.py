"""Real TLS programs for the coverage tests: a Go binary (with and without its symbol
table), a static OpenSSL client (with and without symbols) and a Java TLS client. Each
prints "ready" and waits for a line on stdin (then, given a port, makes one HTTPS call)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

GO_SOURCE = Path(__file__).resolve().parent.parent / "producers" / "tls_go"

STATIC_C = r"""
#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
/* prints "ready", waits for a line; then, given a port, GETs / over TLS from 127.0.0.1 */
int main(int argc, char **argv) {
    char line[16];
    printf("ready %s\n", OpenSSL_version(OPENSSL_VERSION));
    fflush(stdout);
    if (!fgets(line, sizeof line, stdin) || argc < 2) return 0;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) return 1;
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    if (SSL_connect(ssl) != 1) return 2;
    const char *req = "GET /static HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    SSL_write(ssl, req, strlen(req));
    char buf[4096];
    int n, total = 0;
    while ((n = SSL_read(ssl, buf, sizeof buf)) > 0) total += n;
    printf("%d\n", total);
    SSL_shutdown(ssl);
    close(fd);
    return 0;
}
"""

JAVA_CLIENT = r"""
import java.io.*;
import java.net.*;
import javax.net.ssl.*;
import java.security.cert.X509Certificate;
public class TlsClient {
    public static void main(String[] args) throws Exception {
        System.out.println("ready");
        System.out.flush();
        new BufferedReader(new InputStreamReader(System.in)).readLine();
        if (args.length < 1) return;
        TrustManager[] all = {new X509TrustManager() {
            public void checkClientTrusted(X509Certificate[] c, String a) {}
            public void checkServerTrusted(X509Certificate[] c, String a) {}
            public X509Certificate[] getAcceptedIssuers() { return new X509Certificate[0]; }}};
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(null, all, null);
        try (SSLSocket s = (SSLSocket) ctx.getSocketFactory().createSocket("127.0.0.1",
                Integer.parseInt(args[0]))) {
            String req = "GET /java HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
            s.getOutputStream().write(req.getBytes());
            s.getOutputStream().flush();
            System.out.println(s.getInputStream().readAllBytes().length);
        }
    }
}
"""


def build_go(out: Path, stripped: bool) -> str:
    go = shutil.which("go")
    if go is None:
        pytest.skip("Go toolchain not found")
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod"}
    cmd = [go, "build", "-o", str(out)]
    if stripped:
        cmd.append("-ldflags=-s -w")
    subprocess.run([*cmd, "."], cwd=GO_SOURCE, check=True, env=env, capture_output=True)
    return str(out)


def build_static_openssl(where: Path, stripped: bool) -> str:
    """A static executable with OpenSSL linked in (Debian's libssl.a, libcrypto.a)."""
    if shutil.which("gcc") is None or not Path("/usr/include/openssl/ssl.h").exists():
        pytest.skip("gcc and libssl-dev are needed for a static OpenSSL binary")
    src = where / "static_tls.c"
    src.write_text(STATIC_C)
    out = where / ("static_tls_stripped" if stripped else "static_tls")
    cmd = ["gcc", "-O1", "-static", "-o", str(out), str(src), "-lssl", "-lcrypto", "-pthread"]
    if stripped:
        cmd.insert(1, "-s")
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"static OpenSSL link failed: {done.stderr.strip()[-300:]}")
    return str(out)


def java_client(where: Path) -> list[str] | None:
    """The command line of the Java TLS client (source-file mode), or None without a JRE."""
    java = shutil.which("java")
    if java is None:
        return None
    src = where / "TlsClient.java"
    src.write_text(JAVA_CLIENT)
    return [java, "-Xshare:auto", "-XX:TieredStopAtLevel=1", str(src)]
