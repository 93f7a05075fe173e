/*
 * LD_PRELOAD shim for the Spark driver JVM: a bind() to the wildcard address (0.0.0.0 or ::) binds
 * to loopback instead (127.0.0.1, or ::ffff:127.0.0.1 on Java's dual-stack IPv6 sockets).
 *
 * Why: Spark 4.3's Real-time Mode starts a streaming-shuffle server per task through
 * TransportContext.createServer(), which binds the wildcard address (its host is null) and takes
 * neither spark.driver.bindAddress nor SPARK_LOCAL_IP. Every other listener of the driver is
 * bound to 127.0.0.1 by configuration and goes through unchanged. Built by `make setup`.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

typedef int (*bind_fn)(int, const struct sockaddr *, socklen_t);

int bind(int fd, const struct sockaddr *addr, socklen_t len) {
    static bind_fn real_bind;
    if (!real_bind) real_bind = (bind_fn)dlsym(RTLD_NEXT, "bind");
    if (addr && addr->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        struct sockaddr_in in4;
        memcpy(&in4, addr, sizeof in4);
        if (in4.sin_addr.s_addr == htonl(INADDR_ANY)) {
            in4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            return real_bind(fd, (const struct sockaddr *)&in4, sizeof in4);
        }
    } else if (addr && addr->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 in6;
        memcpy(&in6, addr, sizeof in6);
        if (IN6_IS_ADDR_UNSPECIFIED(&in6.sin6_addr)) {
            /* ::ffff:127.0.0.1 - IPv4 loopback on a dual-stack socket, as Java binds 127.0.0.1 */
            memset(&in6.sin6_addr, 0, sizeof in6.sin6_addr);
            in6.sin6_addr.s6_addr[10] = 0xff;
            in6.sin6_addr.s6_addr[11] = 0xff;
            in6.sin6_addr.s6_addr[12] = 127;
            in6.sin6_addr.s6_addr[15] = 1;
            return real_bind(fd, (const struct sockaddr *)&in6, sizeof in6);
        }
    }
    return real_bind(fd, addr, len);
}
