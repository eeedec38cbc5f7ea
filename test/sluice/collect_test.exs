defmodule Sluice.CollectTest do
  @moduledoc """
  `Sluice.run` keeps the output in collectors of the NIF's (`Sluice.Native.read_into/3`):
  one binary per output, grown in place and handed over whole. Every byte must arrive, in
  order, whatever the sizes of the reads and of the growth steps, and `max_output` must
  stop at the same byte as before: one past the limit.
  """
  use Sluice.Case, async: false

  # Around a page, a default pipe (64 KiB, 256 KiB: a read's size), the allocator's
  # single-block threshold (512 KiB) and the buffer's doublings.
  @sizes [0, 1, 64, 65, 4095, 4096, 4097, 65_535, 65_536, 65_537, 262_143, 262_144] ++
           [262_145, 524_287, 524_289, 1_048_577, 5_000_003]

  setup do
    dir = Path.join(System.tmp_dir!(), "sluice-collect-#{System.unique_integer([:positive])}")
    File.mkdir_p!(dir)
    on_exit(fn -> File.rm_rf!(dir) end)
    %{dir: dir}
  end

  defp random_file(dir, size) do
    path = Path.join(dir, "#{size}")
    File.write!(path, :crypto.strong_rand_bytes(size))
    {path, File.read!(path)}
  end

  test "stdout and stderr arrive byte for byte, each as one binary of its size", %{dir: dir} do
    for size <- @sizes do
      {path, bytes} = random_file(dir, size)

      assert {:ok, %{status: 0, stdout: ^bytes, stderr: ""}} = Sluice.run(["cat", path])

      # Both at once, interleaved as the program writes them.
      script = "cat '#{path}' & cat '#{path}' >&2; wait"

      assert {:ok, %{status: 0, stdout: ^bytes, stderr: ^bytes}} =
               Sluice.run(["sh", "-c", script], stderr: :capture)

      # Trimmed to its length: no spare capacity stays referenced by the result.
      {:ok, %{stdout: out}} = Sluice.run(["cat", path])
      if size > 64, do: assert(:binary.referenced_byte_size(out) == size)
    end
  end

  test "a program that writes in small pieces over time", %{dir: dir} do
    {path, bytes} = random_file(dir, 300_000)
    # dd writes 1000-byte blocks, each a write(2) of its own.
    argv = ["dd", "if=#{path}", "bs=1000", "status=none"]
    assert {:ok, %{stdout: ^bytes}} = Sluice.run(argv)
  end

  test "max_output: an output of exactly the limit is accepted", %{dir: dir} do
    for size <- [1, 4096, 262_144, 262_145, 1_048_577] do
      {path, bytes} = random_file(dir, size)
      assert {:ok, %{stdout: ^bytes}} = Sluice.run(["cat", path], max_output: size)
    end
  end

  test "max_output: one byte more stops the program; the result holds the first limit + 1 bytes",
       %{dir: dir} do
    {path, bytes} = random_file(dir, 1_048_577)

    for max <- [1, 4095, 65_536, 262_143, 262_144, 262_145, 1_048_576] do
      assert {:error, %Sluice.Error{reason: :max_output, result: result}} =
               Sluice.run(["cat", path], max_output: max)

      assert result.stdout == binary_part(bytes, 0, max + 1)
    end

    # A program that never stops writing.
    assert {:error, %Sluice.Error{reason: :max_output, result: result}} =
             Sluice.run(["yes"], max_output: 300_000)

    assert byte_size(result.stdout) == 300_001
    assert result.status == {:signal, :sigterm}
  end

  test "max_output counts stdout and stderr together", %{dir: dir} do
    {path, bytes} = random_file(dir, 600_000)
    script = "cat '#{path}' & cat '#{path}' >&2; wait"

    assert {:error, %Sluice.Error{reason: :max_output, result: result}} =
             Sluice.run(["sh", "-c", script], stderr: :capture, max_output: 500_000)

    assert byte_size(result.stdout) + byte_size(result.stderr) == 500_001
    assert result.stdout == binary_part(bytes, 0, byte_size(result.stdout))
    assert result.stderr == binary_part(bytes, 0, byte_size(result.stderr))
  end

  test "output read while a collectable function's input waits is kept in order" do
    chunks = for i <- 1..200, do: :binary.copy(<<rem(i, 256)>>, 32_768)
    input = fn collectable -> Enum.into(chunks, collectable) end
    expected = IO.iodata_to_binary(chunks)
    assert {:ok, %{stdout: ^expected}} = Sluice.run(["cat"], input: input)
  end

  test "max_output with a function input: output kept while it ran is cut at the limit too" do
    # cat echoes the input while the function still writes: stdin full, the pump reads
    # output into its queue in 64 KiB chunks, past the limit.
    chunks = for i <- 1..64, do: :crypto.strong_rand_bytes(32_768) <> <<i>>
    input = fn collectable -> Enum.into(chunks, collectable) end
    expected = binary_part(IO.iodata_to_binary(chunks), 0, 100_001)

    assert {:error, %Sluice.Error{reason: :max_output, result: result}} =
             Sluice.run(["cat"], input: input, max_output: 100_000)

    assert result.stdout == expected
  end

  test "a timeout keeps what was collected until then" do
    script = "head -c 100000 /dev/zero; sleep 10"

    assert {:error, %Sluice.Error{reason: :timeout, result: result}} =
             Sluice.run(["sh", "-c", script], timeout: 500, kill_grace: 100)

    assert result.stdout == :binary.copy(<<0>>, 100_000)
  end
end
