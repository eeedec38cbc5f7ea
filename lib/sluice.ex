defmodule Sluice do
  @moduledoc """
  Run external OS programs from Elixir, safely and fast.

  See `Sluice.Process` for the low-level API.
  """
end
