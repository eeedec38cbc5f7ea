# Runs the :console attack test with the VM on a root terminal, followed by a root shell
# (an operator who ran the node in a terminal): the line the user program typed into the
# terminal is then executed by root's shell. Run as root from the worktree.
import os, pty, sys, time, select
pid, fd = pty.fork()
if pid == 0:
    os.execvp("sh", ["sh", "-c", "MIX_ENV=test mix test test/attack/sl19_attack_test.exs --only console; exec sh -i"])
out = b""
end = time.time() + float(sys.argv[1] if len(sys.argv) > 1 else 60)
typed = time.time() + 15
while time.time() < end:
    r, _, _ = select.select([fd], [], [], 0.5)
    if time.time() > typed + 2:
        os.write(fd, b"operator-password\n")
        typed = time.time()
    if r:
        try:
            out += os.read(fd, 4096)
        except OSError:
            break
os.write(fd, b"exit\n")
sys.stdout.write(out.decode(errors="replace"))
