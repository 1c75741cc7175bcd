"""The portal's settings, with email delivery (a true edge) recorded in files the fault tests read."""

from portal.settings import *

EMAIL_BACKEND = "tests.faults.mailbox.RecordingEmailBackend"
