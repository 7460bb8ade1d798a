// Runs on the audio thread: hands the microphone's samples (first channel) to the page ~10 times a second.
class PcmCapture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.buffer = new Float32Array(Math.round(sampleRate / 10));
    this.filled = 0;
    // Any message from the page asks for what is buffered now, answered even when that is nothing.
    this.port.onmessage = () => this.flush(true);
  }

  flush(always = false) {
    if (this.filled || always) this.port.postMessage(this.buffer.slice(0, this.filled));
    this.filled = 0;
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel) {
      let i = 0;
      while (i < channel.length) {
        const n = Math.min(channel.length - i, this.buffer.length - this.filled);
        this.buffer.set(channel.subarray(i, i + n), this.filled);
        this.filled += n;
        i += n;
        if (this.filled === this.buffer.length) this.flush();
      }
    }
    return true;
  }
}

registerProcessor("pcm-capture", PcmCapture);
