/* A container process forging a DNS reply to itself, for tests/dns.rs: a reply for
 * `allowed.test` pointing at ANSWER, sent to a UDP socket of its own, either from
 * 127.0.0.1:53 (mode "udp": a DNS server of its own on loopback) or through a raw socket
 * with the resolver's address as the source (mode "raw"). Prints "received N" when its
 * socket got the datagram, so the test knows the kernel delivered it (and the agent's
 * DNS-reply hook saw it).
 *
 * usage: dns_forge udp|raw RESOLVER OWN_ADDRESS ANSWER */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static size_t reply(unsigned char *out, in_addr_t answer) {
    static const unsigned char head[] = {
        0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0,
        7, 'a', 'l', 'l', 'o', 'w', 'e', 'd', 4, 't', 'e', 's', 't', 0, 0, 1, 0, 1,
        0xc0, 12, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4};
    memcpy(out, head, sizeof head);
    memcpy(out + sizeof head, &answer, 4);
    return sizeof head + 4;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s udp|raw RESOLVER OWN_ADDRESS ANSWER\n", argv[0]);
        return 2;
    }
    int rx = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in local = {.sin_family = AF_INET, .sin_addr.s_addr = INADDR_ANY};
    socklen_t len = sizeof local;
    if (rx < 0 || bind(rx, (struct sockaddr *)&local, sizeof local) != 0 ||
        getsockname(rx, (struct sockaddr *)&local, &len) != 0) {
        perror("receiver");
        return 1;
    }
    struct timeval timeout = {.tv_sec = 2};
    setsockopt(rx, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    unsigned char packet[256];
    size_t dns_len;
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = local.sin_port};
    if (strcmp(argv[1], "udp") == 0) {
        int tx = socket(AF_INET, SOCK_DGRAM, 0);
        struct sockaddr_in from = {.sin_family = AF_INET, .sin_port = htons(53)};
        from.sin_addr.s_addr = inet_addr("127.0.0.1");
        if (tx < 0 || bind(tx, (struct sockaddr *)&from, sizeof from) != 0) {
            perror("bind 127.0.0.1:53");
            return 1;
        }
        to.sin_addr.s_addr = inet_addr("127.0.0.1");
        dns_len = reply(packet, inet_addr(argv[4]));
        if (sendto(tx, packet, dns_len, 0, (struct sockaddr *)&to, sizeof to) < 0) {
            perror("sendto");
            return 1;
        }
    } else {
        int tx = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
        if (tx < 0) {
            perror("raw socket");
            return 1;
        }
        struct iphdr *ip = (struct iphdr *)packet;
        struct udphdr *udp = (struct udphdr *)(packet + sizeof *ip);
        dns_len = reply(packet + sizeof *ip + sizeof *udp, inet_addr(argv[4]));
        memset(ip, 0, sizeof *ip);
        ip->version = 4;
        ip->ihl = 5;
        ip->ttl = 64;
        ip->protocol = IPPROTO_UDP;
        ip->saddr = inet_addr(argv[2]);
        ip->daddr = inet_addr(argv[3]);
        ip->tot_len = htons(sizeof *ip + sizeof *udp + dns_len);
        udp->source = htons(53);
        udp->dest = local.sin_port;
        udp->len = htons(sizeof *udp + dns_len);
        udp->check = 0; /* optional for IPv4 */
        to.sin_addr.s_addr = ip->daddr;
        size_t total = sizeof *ip + sizeof *udp + dns_len;
        if (sendto(tx, packet, total, 0, (struct sockaddr *)&to, sizeof to) < 0) {
            perror("sendto raw");
            return 1;
        }
    }
    unsigned char got[512];
    ssize_t n = recv(rx, got, sizeof got, 0);
    if (n < 0) {
        perror("recv");
        return 1;
    }
    printf("received %zd\n", n);
    return 0;
}
