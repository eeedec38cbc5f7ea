defmodule Sluice.Application do
  @moduledoc false
  use Application

  @impl true
  def start(_type, _args) do
    # The helper server restarts the helper program itself, with a backoff, for as long as
    # it keeps dying; the supervisor only restarts the server should it crash.
    Supervisor.start_link([Sluice.Control.Registry, Sluice.Control.EnvServer, Sluice.Helper],
      strategy: :one_for_one,
      max_restarts: 10,
      name: Sluice.Supervisor
    )
  end
end
