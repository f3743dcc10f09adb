"""The mock Gaia-ESO survey: stellar population, line list, spectrum engine and GES-format writer.

    starlabel synth survey --out DIR --n-stars N --seed S

See `engine` for the physics, `population` for the Milky Way model and `survey` for the files.
"""
