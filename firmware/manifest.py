# Freezes Qala's board firmware into a custom MicroPython image (needed on ESP8266, where the heap cannot hold
# loaded bytecode). In a MicroPython checkout:
#   make -C ports/esp8266 BOARD=ESP8266_GENERIC FROZEN_MANIFEST=/path/to/qala/firmware/manifest.py
# main.py, boot.py and board.json are copied to the board's filesystem as usual; the rest then runs from flash.
# Not a module: MicroPython's build tools define include() and package(); hub/tools/bundle.py skips this file.
include("$(PORT_DIR)/boards/manifest.py")  # noqa: F821
package("protocols", base_path="..", opt=3)  # noqa: F821
package("firmware", base_path="..", opt=3)  # noqa: F821
