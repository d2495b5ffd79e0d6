/* uds_http: one HTTP/1.1 request over a unix socket, for module containers in the workload tests.
 *
 *   uds_http SOCKET METHOD TARGET [BODY]
 *
 * Prints the status code on the first line, then the response body; exits 0 when an answer came.
 * Built statically by the test (gcc -static) so a busybox image can run it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int send_all(int fd, const char *data, size_t length) {
    while (length > 0) {
        ssize_t sent = write(fd, data, length);
        if (sent <= 0) return -1;
        data += sent;
        length -= (size_t)sent;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 4 || argc > 5) {
        fprintf(stderr, "usage: %s SOCKET METHOD TARGET [BODY]\n", argv[0]);
        return 2;
    }
    const char *body = argc == 5 ? argv[4] : "";
    struct sockaddr_un address = {.sun_family = AF_UNIX};
    if (strlen(argv[1]) >= sizeof(address.sun_path)) return 2;
    strcpy(address.sun_path, argv[1]);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&address, sizeof(address)) != 0) {
        perror("connect");
        return 3;
    }
    char head[4096];
    int length = snprintf(head, sizeof(head),
                          "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                          "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                          argv[2], argv[3], strlen(body));
    if (length <= 0 || (size_t)length >= sizeof(head) || send_all(fd, head, (size_t)length) ||
        send_all(fd, body, strlen(body))) {
        perror("write");
        return 3;
    }
    size_t size = 0, capacity = 65536;
    char *answer = malloc(capacity + 1);
    for (;;) {
        if (size == capacity) answer = realloc(answer, (capacity *= 2) + 1);
        ssize_t got = read(fd, answer + size, capacity - size);
        if (got <= 0) break;
        size += (size_t)got;
    }
    answer[size] = 0;
    close(fd);
    char *split = strstr(answer, "\r\n\r\n");
    if (strncmp(answer, "HTTP/1.1 ", 9) != 0 || split == NULL) {
        fprintf(stderr, "no HTTP answer\n");
        return 4;
    }
    printf("%.3s\n%s\n", answer + 9, split + 4);
    return 0;
}
