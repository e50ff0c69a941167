package dev.strata.nbd;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.IOException;
import java.net.Inet4Address;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.StandardProtocolFamily;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Where and how the NBD server listens: exactly the address named, and a UNIX socket only its owner can use. */
class NbdListenTest {
    @TempDir
    Path dir;

    @Test
    void aUnixSocketIsCreatedWithMode0600WhateverTheUmask() throws Exception {
        Path socket = dir.resolve("nbd.sock");
        NbdServer server = new NbdServer();
        server.start(new NbdServer.Unix(socket), 0);
        try {
            assertThat(PosixFilePermissions.toString(Files.getPosixFilePermissions(socket)))
                    .isEqualTo("rw-------");
            try (SocketChannel c = SocketChannel.open(java.net.UnixDomainSocketAddress.of(socket))) {
                assertThat(c.isConnected()).isTrue();
            }
            assertThat(Files.list(dir)).as("no staging directory left behind").containsExactly(socket);
        } finally {
            server.close();
        }
    }

    @Test
    void theIpv4WildcardIsBoundAsIpv4OnlyNotAsTheIpv6Wildcard() throws Exception {
        NbdServer server = new NbdServer();
        server.start(new NbdServer.Inet("0.0.0.0", "0"), 0);
        try {
            InetSocketAddress bound = (InetSocketAddress) server.boundAddress().orElseThrow();
            assertThat(bound.getAddress()).isInstanceOf(Inet4Address.class);
            assertThat(bound.getAddress().isAnyLocalAddress()).isTrue();
            try (SocketChannel c = SocketChannel.open(new InetSocketAddress("127.0.0.1", bound.getPort()))) {
                assertThat(c.isConnected()).isTrue();
            }
            // a dual-stack socket on [::] would accept this too
            assertThatThrownBy(() -> {
                        try (SocketChannel c = SocketChannel.open(StandardProtocolFamily.INET6)) {
                            c.connect(new InetSocketAddress(InetAddress.getByName("::1"), bound.getPort()));
                        }
                    })
                    .isInstanceOf(IOException.class);
        } finally {
            server.close();
        }
    }
}
