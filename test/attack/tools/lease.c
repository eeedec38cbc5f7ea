/* Takes a write lease on argv[1] (a file the caller owns) and holds it argv[2] seconds.
   Any open() of the file without O_NONBLOCK (execve's included) then waits
   /proc/sys/fs/lease-break-time seconds (45 by default). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
  signal(SIGIO, SIG_IGN);
  int fd = open(argv[1], O_RDONLY);
  if (fd < 0) { perror("open"); return 1; }
  if (fcntl(fd, F_SETLEASE, F_WRLCK) < 0) { perror("F_SETLEASE"); return 1; }
  printf("leased\n");
  fflush(stdout);
  sleep(atoi(argv[2]));
  return 0;
}
