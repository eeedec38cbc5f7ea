ExUnit.start(exclude: [:external_vm])
