"""``comicgen serve``: the live studio.

A local web server (Starlette on uvicorn) for one workspace. It keeps the model
loaded, watches the story, character, config and template files (watchfiles), and on
every save parses the story again, lays out its pages with the same templates as
``render`` and pushes the change to the open pages (server-sent events). Panels whose
content key changed are painted in the background, through the same panel cache
(and panel locks) as ``render``; a save while painting drops work that is now stale.

Modules: :mod:`.studio` (the coordinator: stories, builds, the token),
:mod:`.pages` (a story's pages in memory), :mod:`.jobs` (the painting thread),
:mod:`.events` (server-sent events), :mod:`.watcher` (file watching),
:mod:`.paths` (what may be served), :mod:`.app` (the HTTP routes),
:mod:`.characters` (the character library page).
"""
