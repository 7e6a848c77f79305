from typing import List

from .manifest import ZooModelInfo
from .sources import ZooSource


class UltralyticsSource(ZooSource):
    def entries(self) -> List[ZooModelInfo]:
        return []
