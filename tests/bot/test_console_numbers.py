"""Console option numbers are unique on the screen."""

from __future__ import annotations

import io

from bot.channels.console import ConsoleChannel
from bot.core import Button, Reply


async def test_numbering_continues_across_messages_and_a_typed_line_starts_again():
    replies = [
        Reply("You don't own a course yet.", [[Button("🎓 My courses", "mine")]]),
        Reply("You may also like", [[Button("Go", "course:4:rec")], [Button("SQL", "course:5")]]),
    ]

    async def dispatch(msg):
        return replies

    out = io.StringIO()
    console = ConsoleChannel(dispatch, out=out)
    await console.handle_line("/mycourses")
    screen = out.getvalue()
    assert "1. 🎓 My courses" in screen and "2. Go" in screen and "3. SQL" in screen
    assert [b.payload for b in console.options] == ["mine", "course:4:rec", "course:5"]
    assert console.to_incoming("2").payload == "course:4:rec", "2 opens what the screen says"

    await console.send("me", Reply("⏰ Reminder", [[Button("Open", "course:1")]]))
    assert "4. Open" in out.getvalue(), "a message arriving later continues the numbering"
    assert console.to_incoming("4").payload == "course:1"

    replies[:] = [Reply("Categories", [[Button("Programming", "cat:1:0")]])]
    await console.handle_line("/catalog")
    assert out.getvalue().endswith("Categories\n1. Programming\n\n"), "the new answer takes over"
    assert [b.payload for b in console.options] == ["cat:1:0"]


async def test_cover_with_a_picture_file_carries_the_picture(tmp_path):
    """The console sends a photo the way it can: `/cover <course_id> <picture file>`."""
    picture = tmp_path / "cover.png"
    picture.write_bytes(b"\x89PNG fake")
    console = ConsoleChannel(lambda msg: [], out=io.StringIO())
    msg = console.to_incoming(f"/cover 3 {picture}")
    assert (msg.command, msg.args, msg.image) == ("cover", "3", b"\x89PNG fake")
    assert getattr(console.to_incoming("/cover 3 off"), "image", None) is None
