defmodule Sluice.Application do
  @moduledoc false
  use Application

  @impl true
  def start(_type, _args) do
    Sluice.Process.create_table()
    children = [Sluice.Helper]
    # The helper restarts at once; a crash loop still ends the application.
    Supervisor.start_link(children, strategy: :one_for_one, max_restarts: 10, max_seconds: 5)
  end
end
