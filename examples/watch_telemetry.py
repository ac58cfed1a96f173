"""Watch a gun while it works: its events as they come, its state once a second.

python examples/watch_telemetry.py
"""

from __future__ import annotations

import asyncio

import gunctl


async def report(gun: gunctl.Gun) -> list[gunctl.GunState]:
    """Print the state once a (session) second while a session runs; return what was seen."""
    seen: list[gunctl.GunState] = []
    async for event in gun.events():
        print(f"event: {event.type}")
        if isinstance(event, gunctl.StepStarted):
            for _ in range(5):
                state = gun.state()
                seen.append(state)
                print(
                    f"  {state.phase}: {state.speed_ppm or 0:.0f} ppm, "
                    f"{state.temperature_c} °C, battery {state.battery_pct} %"
                )
                await asyncio.sleep(1.0 / 100)  # one session second at time_scale=100
        if isinstance(event, gunctl.SessionCompleted | gunctl.SessionAborted):
            return seen
    return seen


async def main() -> list[gunctl.GunState]:
    async with gunctl.simulate("gunctl-open", time_scale=100) as gun:
        watcher = asyncio.create_task(report(gun))
        await gun.run("glute", side="left")
        return await watcher


if __name__ == "__main__":
    asyncio.run(main())
