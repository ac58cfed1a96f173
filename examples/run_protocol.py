"""Run a protocol on the simulated gun and say how it ended.

python examples/run_protocol.py
"""

from __future__ import annotations

import asyncio

import gunctl


async def main() -> gunctl.Outcome:
    async with gunctl.simulate("gunctl-open", time_scale=100) as gun:
        try:
            outcome = await gun.run("glute", side="left", intensity_cap=0.8)
        except gunctl.SafetyStopError as stop:
            print(f"safety stop by the {stop.rule} rule: {stop.what}")
            raise
        print(f"{outcome.type}: {outcome.worked_s:.0f} s of massage")
        return outcome


if __name__ == "__main__":
    asyncio.run(main())
