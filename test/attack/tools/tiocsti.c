/* Pushes argv[2] into the input queue of the terminal open on fd argv[1]. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
int main(int argc, char **argv) {
  int fd = atoi(argv[1]);
  for (char *c = argv[2]; *c; c++)
    if (ioctl(fd, TIOCSTI, c) < 0) { perror("TIOCSTI"); return 1; }
  char nl = '\n';
  if (ioctl(fd, TIOCSTI, &nl) < 0) { perror("TIOCSTI"); return 1; }
  fprintf(stderr, "injected\n");
  return 0;
}
