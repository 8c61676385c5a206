/*
 * transport_socket: TCP_NODELAY on the sockets libesmtp connects.
 *
 * libesmtp 1.1 writes a message in 2 kB pieces and never sets
 * TCP_NODELAY, and it gives no access to its socket. With Nagle's
 * algorithm on, the last small piece of each message waits for the
 * relay's delayed ACK: about 40 ms per message, whatever the relay's
 * speed (bench/send measured 175 messages a second over 8 connections,
 * against 3,100 with the option set). So assent defines connect(2):
 * the program's own definition comes before libc's for every library
 * it loads, libesmtp included. It calls the next connect() in line
 * (libc's, or a sanitizer's) and then sets TCP_NODELAY on TCP sockets,
 * which only ever makes small writes go out sooner. libpq sets the same
 * option on its own TCP connections.
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include "assent/log.h"
#include "assent/transport.h"

typedef int (*transport_connect_fn)(int, const struct sockaddr *, socklen_t);

static transport_connect_fn transport_next_connect;
static pthread_once_t transport_connect_once = PTHREAD_ONCE_INIT;

static void
transport_find_connect(void)
{
	transport_next_connect = (transport_connect_fn)dlsym(RTLD_NEXT, "connect");
	if (transport_next_connect == NULL)
		fatalx("connect: not found after assent's own (dlsym)");
}

int
connect(int fd, const struct sockaddr *sa, socklen_t len)
{
	int rc, saved, one = 1;

	pthread_once(&transport_connect_once, transport_find_connect);
	rc = transport_next_connect(fd, sa, len);
	saved = errno;
	if ((rc == 0 || errno == EINPROGRESS) && sa != NULL &&
	    (sa->sa_family == AF_INET || sa->sa_family == AF_INET6))
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	errno = saved;
	return rc;
}

void
transport_socket_use(void)
{
	pthread_once(&transport_connect_once, transport_find_connect);
}
