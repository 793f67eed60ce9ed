"""report_page: the HTML page, read back with the standard library's HTML parser."""

import base64
import html.parser

from linear_jax.runs import report_page

PNG = b'\x89PNG\r\n\x1a\n' + bytes(range(40))


class _Reader(html.parser.HTMLParser):
  """The page's tags with their attributes, and its text, in order."""

  def __init__(self):
    super().__init__()
    self.tags, self.text = [], []

  def handle_starttag(self, tag, attrs):
    self.tags.append((tag, dict(attrs)))

  def handle_data(self, data):
    self.text.append(data)


def test_a_page_holds_its_parts_in_order_escaped_with_the_picture_embedded(tmp_path):
  (tmp_path / 'a.png').write_bytes(PNG)
  rep = report_page.Report(str(tmp_path))
  rep.section('1. <b> & co', 'why x < y')
  rep.picture('a.png', 'what it shows', 'how to read it')
  rep.section('2. no text')
  rep.table(['k', 'v'], [['a<b', 1], ['c', 2.5]])
  path = rep.write('Title & more')
  assert path == str(tmp_path / 'report.html')
  reader = _Reader()
  reader.feed((tmp_path / 'report.html').read_text())
  tags = [t for t, _ in reader.tags]
  assert tags.count('h2') == 2 and tags.count('p') == 1 and tags.count('tr') == 3 and tags.count('td') == 4
  assert tags.index('h1') < tags.index('h2') < tags.index('img') < tags.index('table')
  text = ''.join(reader.text)
  for words in ('Title & more', '1. <b> & co', 'why x < y', 'what it shows', 'how to read it', 'a<b', '2.5'):
    assert words in text
  img = next(a for t, a in reader.tags if t == 'img')
  assert img['alt'] == img['data-file'] == 'a.png'
  assert base64.b64decode(img['src'].removeprefix('data:image/png;base64,')) == PNG
