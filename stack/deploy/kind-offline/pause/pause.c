/* pause: the process that holds a pod's namespaces (the pod "sandbox") while its containers
 * come and go. It sleeps until a signal: SIGINT/SIGTERM end it, SIGCHLD reaps zombies (it is
 * PID 1 of the pod when the PID namespace is shared). Built static: the image is this file. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int signal) {
    fprintf(stderr, "pause: shutting down, got signal %d\n", signal);
    exit(0);
}

static void reap(int signal) {
    (void)signal;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

static void on(int signal, void (*handler)(int)) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = handler;
    action.sa_flags = SA_NOCLDSTOP | SA_RESTART;
    if (sigaction(signal, &action, NULL) < 0) {
        perror("pause: sigaction");
        exit(1);
    }
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "-v") == 0) {
        printf("pause (scalelab kind-offline)\n");
        return 0;
    }
    if (getpid() != 1) {
        fprintf(stderr, "pause: warning: not PID 1\n");
    }
    on(SIGINT, stop);
    on(SIGTERM, stop);
    on(SIGCHLD, reap);
    for (;;) {
        pause();
    }
}
