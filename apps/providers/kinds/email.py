"""Email. The family and policy are known; the adapter (SMTP out, IMAP and inbound endpoints
in) is still to come (the channels issue): until then such a channel is stored but never sends
and has no webhook."""

from apps.providers.kinds.base import ChannelKind, ChannelPolicy, Family

FAMILY = Family(
    key="email",
    label="Email",
    order=20,
    always_listed=True,
    icon=(
        "M3 5h18a1 1 0 0 1 1 1v12a1 1 0 0 1-1 1H3a1 1 0 0 1-1-1V6a1 1 0 0 1 1-1Zm1 2.2V17h16V7.2l-8 5.3-8-5.3ZM5.4 7l6"
        ".6 4.4L18.6 7H5.4Z"
    ),
)

EMAIL = ChannelKind(
    key="email",
    label="Email",
    family=FAMILY,
    provider="email",
    policy=ChannelPolicy(
        label="Email", identity_kind="email", needs_phone=False, needs_opt_in=False, reply_window=None, text_limit=None
    ),
    adapter=None,
)
