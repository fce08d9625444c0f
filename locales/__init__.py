"""gettext catalogs (Babel): `<lang>/LC_MESSAGES/coursebot.po`, loaded from the .po directly."""
