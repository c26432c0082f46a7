"""Upload handling for batch uploads: files stream to disk, and a file over the size limit stops being written."""
from __future__ import annotations

from django.conf import settings
from django.core.files.uploadhandler import MemoryFileUploadHandler, TemporaryFileUploadHandler


class SizeLimitedUploadHandler(TemporaryFileUploadHandler):
    """Stream each file to a temporary file, but stop writing once it passes ``LABSEG_MAX_UPLOAD_BYTES``.

    The file is still handed to the view with its true ``size``, so the upload service reports it as too
    large (a per-file error) without a multi-gigabyte file ever being written to disk.
    """

    def new_file(self, *args, **kwargs):
        super().new_file(*args, **kwargs)
        self.limit = int(settings.LABSEG_MAX_UPLOAD_BYTES)
        self.received = 0

    def receive_data_chunk(self, raw_data, start):
        self.received += len(raw_data)
        if self.received <= self.limit:
            self.file.write(raw_data)
        return None


def batch_upload_handlers(request) -> list:
    """Small requests stay in memory (Django's rule: whole body <= FILE_UPLOAD_MAX_MEMORY_SIZE); larger ones
    stream each file to a temporary file, never holding a batch of hundreds of files in memory."""
    return [MemoryFileUploadHandler(request), SizeLimitedUploadHandler(request)]
