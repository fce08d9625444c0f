"""Search keeps its index between messages and sees a new course at once."""

from __future__ import annotations

from tests.handlers.support import Chat, shown


async def test_a_new_course_is_found_by_the_next_search(app):
    learner = Chat(app, "u1")
    admin = Chat(app, "me", name="Admin")
    assert "No course matches" in (await learner.send("/search 区块链 智能合约")).text
    assert "Python for Beginners" in shown(await learner.send("/search python 入门"))

    added = await admin.send(
        "/addcourse programming|区块链与智能合约入门|Blockchain and Smart Contracts|200|29900|"
        "周宁 Zhou Ning|四次直播，从区块链原理到写出第一个智能合约。"
    )
    assert "Added course #" in added.text
    course_id = added.text.split("#")[1].split()[0]
    found = await learner.send("/search 区块链 智能合约")
    assert "Blockchain and Smart Contracts" in shown(found)
    plain = await learner.send("智能合约")
    assert f"#{course_id} Blockchain" in shown(plain), "plain words search too"
