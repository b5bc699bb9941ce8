
__kernel void depthwise_conv2d(__global const DATA_TYPE *input,   /* [channels, height, width] */
                               __global const DATA_TYPE *filter,  /* [channels, kh, kw] */
#ifdef BIAS
                               __global const DATA_TYPE *bias,
#endif
                               __global DATA_TYPE *output,
                               const int in_height,
                               const int in_width,
                               const int out_height,
                               const int out_width,
                               const int filter_height,
                               const int filter_width,
                               const int stride,
                               const int padding,
                               const int dilation,
                               const float relux_max_limit) {
  const int ow = get_global_id(0);
  const int oh = get_global_id(1);
  const int c = get_global_id(2);
  if (ow >= out_width || oh >= out_height) return;
#ifdef BIAS
  DATA_TYPE acc = bias[c];
#else
  DATA_TYPE acc = 0;
#endif
  __global const DATA_TYPE *in = input + c * in_height * in_width;
  __global const DATA_TYPE *f = filter + c * filter_height * filter_width;
  for (int kh = 0; kh < filter_height; ++kh) {
    const int ih = oh * stride - padding + kh * dilation;
    if (ih < 0 || ih >= in_height) continue;
    for (int kw = 0; kw < filter_width; ++kw) {
      const int iw = ow * stride - padding + kw * dilation;
      if (iw < 0 || iw >= in_width) continue;
      acc = mad(in[ih * in_width + iw], f[kh * filter_width + kw], acc);
    }
  }
  output[(c * out_height + oh) * out_width + ow] =
      do_activation((DATA_TYPE4)acc, relux_max_limit).x;
}
