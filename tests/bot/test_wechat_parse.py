"""The WeChat body is parsed once (defusedxml) into the message wechatpy's own parser gives, and
the passive reply is rendered without wechatpy's TextReply (and survives a `]]>`)."""

from __future__ import annotations

import pytest
from defusedxml.ElementTree import fromstring
from wechatpy import parse_message
from wechatpy.replies import TextReply

from bot.channels.wechat import BadRequest, message_of, passive_xml, xml_fields
from tests.fakes.wechat_api import xml_of

HEAD = {"ToUserName": "gh_fake000001", "FromUserName": "oParse01", "CreateTime": 1764780000}
BODIES = [
    {"MsgType": "text", "Content": " 课程 ", "MsgId": 10000000000000001},
    {"MsgType": "text", "Content": "1. Python", "MsgId": 2, "bizmsgmenuid": 101},
    {"MsgType": "image", "PicUrl": "http://x/p", "MediaId": "M1", "MsgId": 3},
    {"MsgType": "voice", "MediaId": "V1", "Format": "amr", "MsgId": 4},
    {"MsgType": "location", "Location_X": 23.1, "Location_Y": 113.3, "Scale": 20, "MsgId": 5},
    {"MsgType": "event", "Event": "subscribe"},
    {"MsgType": "event", "Event": "subscribe", "EventKey": "qrscene_course_5", "Ticket": "T"},
    {"MsgType": "event", "Event": "SCAN", "EventKey": "course_5", "Ticket": "T"},
    {"MsgType": "event", "Event": "CLICK", "EventKey": "cmd:catalog"},
    {"MsgType": "event", "Event": "VIEW", "EventKey": "https://example.org/"},
    {"MsgType": "event", "Event": "unsubscribe"},
    {"MsgType": "event", "Event": "TEMPLATESENDJOBFINISH", "Status": "success"},
    {"MsgType": "event"},
    {"MsgType": "shortvideo", "MediaId": "S1", "ThumbMediaId": "T1", "MsgId": 6},
    {"MsgType": "something_new", "MsgId": 7},
]


@pytest.mark.parametrize("fields", BODIES, ids=lambda f: f"{f['MsgType']}-{f.get('Event', '')}")
def test_the_message_is_the_one_wechatpy_parses(fields):
    xml = xml_of({**HEAD, **fields})
    ours, theirs = message_of(xml_fields(xml.encode())), parse_message(xml)
    assert type(ours) is type(theirs)
    assert ours._data == theirs._data
    assert (ours.id, ours.source, ours.target, ours.time) == (
        theirs.id,
        theirs.source,
        theirs.target,
        theirs.time,
    )


def test_nested_and_repeated_elements_are_shaped_as_xmltodict_shapes_them():
    xml = (
        "<xml><MsgType>event</MsgType><Event>pic_weixin</Event><SendPicsInfo><Count>2</Count>"
        "<PicList><item><PicMd5Sum>a</PicMd5Sum></item><item><PicMd5Sum>b</PicMd5Sum></item>"
        "</PicList></SendPicsInfo><Empty></Empty></xml>"
    )
    assert message_of(xml_fields(xml))._data == parse_message(xml)._data


@pytest.mark.parametrize("body", [b"", b"<xml>", b"<!DOCTYPE x [<!ENTITY a 'b'>]><xml>&a;</xml>"])
def test_unsafe_or_broken_xml_is_refused(body):
    with pytest.raises(BadRequest):
        xml_fields(body)


def test_the_passive_reply_is_wechatpys_text_reply_and_survives_cdata_ends():
    message = message_of(xml_fields(xml_of({**HEAD, **BODIES[0]})))
    for content in ["课程\n1. Python 入门", "a ]]> b <c>"]:
        ours = {e.tag: e.text for e in fromstring(passive_xml(message, content))}
        assert ours["Content"] == content
        if "]]>" not in content:  # wechatpy's own render breaks on it
            theirs = {
                e.tag: e.text
                for e in fromstring(TextReply(message=message, content=content).render())
            }
            assert {**ours, "CreateTime": None} == {**theirs, "CreateTime": None}
