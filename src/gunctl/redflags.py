"""The warning signs that mean self-massage is the wrong tool: see a professional.

They are shown before every session started from the terminal, and an
unattended start (over MQTT) is refused until the owner has read them and
said so in the configuration. gunctl is a device controller, not medical advice.
"""

NOT_MEDICAL_ADVICE = (
    "gunctl controls a massage gun; it is not medical advice and does not diagnose anything."
)

RED_FLAGS = (
    "loss of bladder or bowel control, or trouble starting to pass urine",
    "numbness around the groin, buttocks or inner thighs (the saddle area)",
    "weakness in a leg or foot that is getting worse, such as a foot that drags (foot drop)",
    "fever, or feeling generally unwell, along with the back or leg pain",
    "recent trauma: a fall, accident or other injury to the back or hips",
)

ADVICE = (
    "If any of these apply, do not use the massage gun: see a doctor or physiotherapist "
    "promptly. Loss of bladder or bowel control or saddle numbness needs urgent care."
)

STOP_RULE = "Stop at once on sharp, shooting or electric pain down the leg."

SUMMARY = (
    f"{NOT_MEDICAL_ADVICE} Do not use a massage gun, and see a doctor, if you have any of "
    f"these: {'; '.join(RED_FLAGS)}."
)
