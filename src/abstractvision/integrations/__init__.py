"""Integrations of abstractvision into other frameworks.

- :mod:`abstractvision.integrations.abstractcore_plugin`: the AbstractCore capability plugin
  (entry point group ``abstractcore.capabilities_plugins``), which makes ``llm.vision``
  run on abstractvision.
- :mod:`abstractvision.integrations.capability`: the capability object itself
  (:class:`~abstractvision.integrations.capability.AbstractVisionCapability`).
- :mod:`abstractvision.integrations.tools`: agent tool helpers that return artifact refs.

Nothing here imports AbstractCore, torch or diffusers when it is imported.
"""
