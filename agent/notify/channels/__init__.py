"""One channel per file; each turns a stored payload into an HTTP request at send time."""

from __future__ import annotations

from typing import Any

from agent.config.notify import ReceiverConfig
from agent.notify.channels import alertmanager, dingtalk, feishu, slack, webhook, wecom
from agent.notify.channels.base import Channel, read_secret

KINDS: dict[str, Any] = {
    "webhook": webhook.Webhook,
    "alertmanager": alertmanager.Alertmanager,
    "slack": slack.Slack,
    "dingtalk": dingtalk.DingTalk,
    "feishu": feishu.Feishu,
    "wecom": wecom.WeCom,
}


def build(cfg: ReceiverConfig, url: str) -> Channel:
    """Build the channel of a receiver for one of its URLs."""
    channel: Channel = KINDS[cfg.type](url, read_secret(cfg), cfg.text)
    return channel
