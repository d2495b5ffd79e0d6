"""Device transports: how edgekeeper reaches a TPM (or a console line) by its own code.

One URL per device (`address`), parsed once; a `Transport` per bus protocol (TIS over I²C and SPI,
TPM frames over a serial line), opened through `registry` by the URL's scheme. Protocol logic is
sans-IO; the bus modules move bytes. Sits below config (which validates URLs) and tpm (which plugs
a transport into tpm2-tss).
"""
