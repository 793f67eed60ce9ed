"""A standalone HTML page of sections, pictures (embedded as base64 PNGs) and tables, written to a folder.

`Report(workdir)` collects the parts in order; `write(title)` writes
workdir/report.html. A picture is read from workdir, where its PNG stays
beside the page.
"""

import base64
from collections.abc import Sequence
import html
import os

from linear_jax.training import files

STYLE = (
  'body{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.4}'
  'img{max-width:100%}figure{margin:1em 0}figcaption{color:#444;font-size:0.9em}'
  'table{border-collapse:collapse;margin:1em 0}'
  'td,th{border:1px solid #ccc;padding:3px 8px;font-size:0.9em}'
)


class Report:
  """Sections of pictures (each with two lines saying what it shows) and tables."""

  def __init__(self, workdir: str):
    self.workdir = workdir
    self.parts: list[str] = []

  def section(self, title: str, text: str = '') -> None:
    """A heading, and a paragraph under it if `text` is given."""
    self.parts.append(f'<h2>{html.escape(title)}</h2>')
    if text:
      self.parts.append(f'<p>{html.escape(text)}</p>')

  def picture(self, name: str, what: str, how_to_read: str) -> None:
    """The PNG `workdir/name`, embedded, captioned with what it shows and how to read it."""
    path = os.path.join(self.workdir, name)
    with open(path, 'rb') as f:
      data = base64.b64encode(f.read()).decode('ascii')
    self.parts.append(
      f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(name)}" '
      f'data-file="{html.escape(name)}">'
      f'<figcaption>{html.escape(what)}<br>{html.escape(how_to_read)}</figcaption></figure>'
    )

  def table(self, header: Sequence[object], rows: Sequence[Sequence[object]]) -> None:
    """A table: `header` [k] and `rows` [n, k], every cell as its `str`."""
    head = ''.join(f'<th>{html.escape(str(h))}</th>' for h in header)
    body = ''.join('<tr>' + ''.join(f'<td>{html.escape(str(c))}</td>' for c in r) + '</tr>' for r in rows)
    self.parts.append(f'<table><tr>{head}</tr>{body}</table>')

  def write(self, title: str) -> str:
    """Writes workdir/report.html, the parts in order under `title`; returns its path."""
    page = (
      f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
      f'<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>'
      + '\n'.join(self.parts)
      + '</body></html>'
    )
    path = os.path.join(self.workdir, 'report.html')
    files.write_text(path, page)  # a new file renamed over the name: never written through a link
    return path
